// Ferrule's entry points, evaluated after the user's scripts. Inbound payload bytes arrive as an
// ArrayBuffer; outbound ones go back as latin-1 strings (one char per byte).
(function (g) {
  function bytesToLatin1(b) {
    var u;
    if (b instanceof ArrayBuffer) {
      u = new Uint8Array(b);
    } else if (ArrayBuffer.isView(b)) {
      u = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } else if (typeof b.toArrayBuffer === "function") {
      u = new Uint8Array(b.toArrayBuffer());
    } else if (Array.isArray(b)) {
      u = Uint8Array.from(b);
    } else {
      throw new TypeError("bytePayload must be an ArrayBuffer or a typed array");
    }
    var out = "";
    for (var i = 0; i < u.length; i += 8192) {
      out += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
    }
    return out;
  }
  function headerString(v) {
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  g.__ferrule_in = function (headersJson, text, bytes, contentType) {
    var externalMsg = {
      headers: JSON.parse(headersJson),
      textPayload: text == null ? undefined : text,
      bytePayload: bytes == null ? null : bytes,
      contentType: contentType == null ? undefined : contentType
    };
    var r = g.mapToDittoProtocolMsgWrapper(externalMsg);
    if (r == null) return "[]";
    if (!Array.isArray(r)) r = [r];
    return JSON.stringify(r);
  };
  g.__ferrule_out = function (dittoJson) {
    var r = g.mapFromDittoProtocolMsgWrapper(JSON.parse(dittoJson));
    if (r == null) return "[]";
    if (!Array.isArray(r)) r = [r];
    var out = [];
    for (var i = 0; i < r.length; i++) {
      var m = r[i];
      if (m == null) continue;
      var headers = {};
      if (m.headers != null) {
        var keys = Object.keys(m.headers);
        for (var k = 0; k < keys.length; k++) {
          var v = m.headers[keys[k]];
          if (v != null) headers[keys[k]] = headerString(v);
        }
      }
      out.push({
        headers: headers,
        text: m.textPayload == null ? null : String(m.textPayload),
        bytes: m.bytePayload == null ? null : bytesToLatin1(m.bytePayload),
        contentType: m.contentType == null ? null : String(m.contentType)
      });
    }
    return JSON.stringify(out);
  };
})(globalThis);
