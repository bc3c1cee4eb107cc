// A small subset of bytebuffer.js 5.0.1 (global `dcodeIO.ByteBuffer`), enough for
// `Ditto.asByteBuffer(...)`: wrap, offset/limit, relative and absolute reads (big endian unless
// `littleEndian`), toHex/toBinary/toUTF8/toBase64/toString(encoding), toArrayBuffer, remaining.
var dcodeIO = (typeof dcodeIO === "object" && dcodeIO) || {};
dcodeIO.ByteBuffer = (function () {
  function ByteBuffer(view, littleEndian) {
    this.view = view;
    this.buffer = view.buffer;
    this.offset = 0;
    this.limit = view.length;
    this.markedOffset = -1;
    this.littleEndian = !!littleEndian;
    this._dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  }
  ByteBuffer.LITTLE_ENDIAN = true;
  ByteBuffer.BIG_ENDIAN = false;
  ByteBuffer.wrap = function (buffer, encoding, littleEndian) {
    if (typeof encoding !== "string") { littleEndian = encoding; }
    var view;
    if (buffer instanceof ByteBuffer) {
      return buffer.clone();
    } else if (buffer instanceof ArrayBuffer) {
      view = new Uint8Array(buffer);
    } else if (ArrayBuffer.isView(buffer)) {
      view = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } else if (Array.isArray(buffer)) {
      view = Uint8Array.from(buffer);
    } else if (typeof buffer === "string") {
      view = new Uint8Array(Ditto.stringToArrayBuffer(buffer));
    } else {
      throw new TypeError("Illegal buffer");
    }
    return new ByteBuffer(view, littleEndian);
  };
  ByteBuffer.allocate = function (capacity, littleEndian) {
    return new ByteBuffer(new Uint8Array(capacity || 16), littleEndian);
  };
  var P = ByteBuffer.prototype;
  P.clone = function () {
    var b = new ByteBuffer(this.view, this.littleEndian);
    b.offset = this.offset; b.limit = this.limit; b.markedOffset = this.markedOffset;
    return b;
  };
  P.order = function (littleEndian) { this.littleEndian = !!littleEndian; return this; };
  P.LE = function (le) { this.littleEndian = le === undefined ? true : !!le; return this; };
  P.BE = function (be) { this.littleEndian = be === undefined ? false : !be; return this; };
  P.remaining = function () { return this.limit - this.offset; };
  P.capacity = function () { return this.view.length; };
  P.flip = function () { this.limit = this.offset; this.offset = 0; return this; };
  P.reset = function () { this.offset = 0; return this; };
  P.mark = function (o) { this.markedOffset = o === undefined ? this.offset : o; return this; };
  P.skip = function (n) { this.offset += n; return this; };
  function reader(size, get) {
    return function (offset) {
      var relative = offset === undefined;
      var at = relative ? this.offset : offset;
      if (at < 0 || at + size > this.limit) {
        throw new RangeError("Illegal offset: 0 <= " + at + " (+" + size + ") <= " + this.limit);
      }
      var v = get.call(this, at);
      if (relative) { this.offset += size; }
      return v;
    };
  }
  P.readUint8 = P.readUInt8 = reader(1, function (at) { return this._dv.getUint8(at); });
  P.readInt8 = P.readByte = reader(1, function (at) { return this._dv.getInt8(at); });
  P.readUint16 = P.readUInt16 = reader(2, function (at) { return this._dv.getUint16(at, this.littleEndian); });
  P.readInt16 = P.readShort = reader(2, function (at) { return this._dv.getInt16(at, this.littleEndian); });
  P.readUint32 = P.readUInt32 = reader(4, function (at) { return this._dv.getUint32(at, this.littleEndian); });
  P.readInt32 = P.readInt = reader(4, function (at) { return this._dv.getInt32(at, this.littleEndian); });
  P.readFloat32 = P.readFloat = reader(4, function (at) { return this._dv.getFloat32(at, this.littleEndian); });
  P.readFloat64 = P.readDouble = reader(8, function (at) { return this._dv.getFloat64(at, this.littleEndian); });
  P._slice = function (begin, end) {
    begin = begin === undefined ? this.offset : begin;
    end = end === undefined ? this.limit : end;
    return this.view.subarray(begin, end);
  };
  P.toArrayBuffer = function () {
    var s = this._slice(this.offset, this.limit);
    return s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength);
  };
  P.toBuffer = P.toArrayBuffer;
  P.toHex = function (begin, end) {
    var s = this._slice(begin, end), out = "";
    for (var i = 0; i < s.length; i++) { out += (s[i] < 16 ? "0" : "") + s[i].toString(16); }
    return out;
  };
  P.toBinary = function (begin, end) {
    return Ditto.arrayBufferToString(this._slice(begin, end).slice().buffer);
  };
  P.toUTF8 = function (begin, end) {
    return decodeURIComponent(escape(this.toBinary(begin, end)));
  };
  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  P.toBase64 = function (begin, end) {
    var s = this._slice(begin, end), out = "";
    for (var i = 0; i < s.length; i += 3) {
      var n = (s[i] << 16) | ((s[i + 1] || 0) << 8) | (s[i + 2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
        (i + 1 < s.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < s.length ? B64[n & 63] : "=");
    }
    return out;
  };
  P.toString = function (encoding, begin, end) {
    switch (encoding) {
      case "utf8": return this.toUTF8(begin, end);
      case "hex": return this.toHex(begin, end);
      case "binary": return this.toBinary(begin, end);
      case "base64": return this.toBase64(begin, end);
      default:
        return "ByteBufferAB(offset=" + this.offset + ",markedOffset=" + this.markedOffset +
          ",limit=" + this.limit + ",capacity=" + this.capacity() + ")";
    }
  };
  return ByteBuffer;
})();
