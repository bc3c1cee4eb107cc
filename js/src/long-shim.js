// A subset of long.js 3.2.0 (global `dcodeIO.Long`) on top of BigInt: 64-bit two's-complement
// integers, signed or unsigned, with the common constructors, arithmetic and conversions.
var dcodeIO = (typeof dcodeIO === "object" && dcodeIO) || {};
dcodeIO.Long = (function () {
  function wrap(big, unsigned) {
    return unsigned ? BigInt.asUintN(64, big) : BigInt.asIntN(64, big);
  }
  function Long(low, high, unsigned) {
    this.unsigned = !!unsigned;
    this.low = low | 0;
    this.high = high | 0;
  }
  function fromBig(big, unsigned) {
    var v = BigInt.asUintN(64, big);
    return new Long(Number(v & 0xffffffffn), Number(v >> 32n), unsigned);
  }
  function big(l) {
    return wrap((BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0), l.unsigned);
  }
  function other(v, unsigned) {
    if (v instanceof Long) return big(v);
    if (typeof v === "number") return BigInt(Math.trunc(v));
    return big(Long.fromValue(v, unsigned));
  }
  Long.isLong = function (o) { return o instanceof Long; };
  Long.fromBits = function (low, high, unsigned) { return new Long(low, high, unsigned); };
  Long.fromInt = function (v, unsigned) { return fromBig(BigInt(v | 0), unsigned); };
  Long.fromNumber = function (v, unsigned) {
    if (!isFinite(v)) return fromBig(0n, unsigned);
    return fromBig(BigInt(Math.trunc(v)), unsigned);
  };
  Long.fromString = function (s, unsigned, radix) {
    if (typeof unsigned === "number") { radix = unsigned; unsigned = false; }
    radix = radix || 10;
    var neg = s.charAt(0) === "-";
    var digits = neg ? s.substring(1) : s;
    var v = 0n, r = BigInt(radix);
    for (var i = 0; i < digits.length; i++) {
      var d = parseInt(digits.charAt(i), radix);
      if (isNaN(d)) throw Error("illegal digit: " + digits.charAt(i));
      v = v * r + BigInt(d);
    }
    return fromBig(neg ? -v : v, unsigned);
  };
  Long.fromValue = function (v, unsigned) {
    if (v instanceof Long) return v;
    if (typeof v === "number") return Long.fromNumber(v, unsigned);
    if (typeof v === "string") return Long.fromString(v, unsigned);
    return new Long(v.low, v.high, v.unsigned);
  };
  Long.ZERO = Long.fromInt(0);
  Long.ONE = Long.fromInt(1);
  Long.UZERO = Long.fromInt(0, true);
  Long.MAX_VALUE = fromBig(0x7fffffffffffffffn, false);
  Long.MIN_VALUE = fromBig(-0x8000000000000000n, false);
  Long.MAX_UNSIGNED_VALUE = fromBig(0xffffffffffffffffn, true);
  var P = Long.prototype;
  P.toBigInt = function () { return big(this); };
  P.toInt = function () { return this.low; };
  P.toNumber = function () { return Number(big(this)); };
  P.toString = function (radix) { return big(this).toString(radix || 10); };
  P.getHighBits = function () { return this.high; };
  P.getLowBits = function () { return this.low; };
  P.getHighBitsUnsigned = function () { return this.high >>> 0; };
  P.getLowBitsUnsigned = function () { return this.low >>> 0; };
  P.isZero = function () { return this.low === 0 && this.high === 0; };
  P.isNegative = function () { return !this.unsigned && this.high < 0; };
  P.isPositive = function () { return !this.isNegative(); };
  P.isOdd = function () { return (this.low & 1) === 1; };
  P.isEven = function () { return (this.low & 1) === 0; };
  P.compare = function (o) { var a = big(this), b = other(o); return a === b ? 0 : a < b ? -1 : 1; };
  P.equals = function (o) { return this.compare(o) === 0; };
  P.lessThan = function (o) { return this.compare(o) < 0; };
  P.lessThanOrEqual = function (o) { return this.compare(o) <= 0; };
  P.greaterThan = function (o) { return this.compare(o) > 0; };
  P.greaterThanOrEqual = function (o) { return this.compare(o) >= 0; };
  function op(f) {
    return function (o) { return fromBig(f(big(this), other(o, this.unsigned)), this.unsigned); };
  }
  P.add = op(function (a, b) { return a + b; });
  P.subtract = op(function (a, b) { return a - b; });
  P.multiply = op(function (a, b) { return a * b; });
  P.divide = op(function (a, b) { if (b === 0n) throw Error("division by zero"); return a / b; });
  P.modulo = op(function (a, b) { return a % b; });
  P.and = op(function (a, b) { return a & b; });
  P.or = op(function (a, b) { return a | b; });
  P.xor = op(function (a, b) { return a ^ b; });
  P.negate = function () { return fromBig(-big(this), this.unsigned); };
  P.not = function () { return fromBig(~big(this), this.unsigned); };
  P.shiftLeft = function (n) { return fromBig(big(this) << BigInt(Number(n) & 63), this.unsigned); };
  P.shiftRight = function (n) {
    return fromBig(BigInt.asIntN(64, big(this)) >> BigInt(Number(n) & 63), this.unsigned);
  };
  P.shiftRightUnsigned = function (n) {
    return fromBig(BigInt.asUintN(64, big(this)) >> BigInt(Number(n) & 63), this.unsigned);
  };
  P.toSigned = function () { return new Long(this.low, this.high, false); };
  P.toUnsigned = function () { return new Long(this.low, this.high, true); };
  P.sub = P.subtract; P.mul = P.multiply; P.div = P.divide; P.mod = P.modulo;
  P.eq = P.equals; P.lt = P.lessThan; P.lte = P.lessThanOrEqual; P.gt = P.greaterThan;
  P.gte = P.greaterThanOrEqual; P.shl = P.shiftLeft; P.shr = P.shiftRight; P.shru = P.shiftRightUnsigned;
  return Long;
})();
