// The global `Ditto` helper object and the default mapping functions (Ditto's ditto-scope.js,
// incoming-mapping.js and outgoing-mapping.js), evaluated before the user's scripts.
var Ditto = (function () {
  function buildTopic(namespace, name, group, channel, criterion, action) {
    var topicChannel = "none" === channel ? "" : "/" + channel;
    var topicAction = action === undefined || action === null ? "" : "/" + action;
    return namespace + "/" + name + "/" + group + topicChannel + "/" + criterion + topicAction;
  }
  return {
    buildDittoProtocolMsg: function (namespace, name, group, channel, criterion, action, path,
                                     dittoHeaders, value, status, extra) {
      return {
        topic: buildTopic(namespace, name, group, channel, criterion, action),
        path: path,
        headers: dittoHeaders,
        value: value,
        status: status,
        extra: extra
      };
    },
    buildExternalMsg: function (headers, textPayload, bytePayload, contentType) {
      return {
        headers: headers,
        textPayload: textPayload,
        bytePayload: bytePayload,
        contentType: contentType
      };
    },
    arrayBufferToString: function (arrayBuffer) {
      var bytes = new Uint8Array(arrayBuffer);
      var out = "";
      for (var i = 0; i < bytes.length; i += 8192) {
        out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
      }
      return out;
    },
    stringToArrayBuffer: function (string) {
      var buf = new ArrayBuffer(string.length);
      var view = new Uint8Array(buf);
      for (var i = 0; i < string.length; i++) {
        view[i] = string.charCodeAt(i);
      }
      return buf;
    },
    asByteBuffer: function (arrayBuffer) {
      return dcodeIO.ByteBuffer.wrap(new Uint8Array(arrayBuffer));
    }
  };
})();

function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
  if (contentType === "application/vnd.eclipse.ditto+json") {
    return JSON.parse(textPayload);
  } else if (contentType === "application/octet-stream") {
    try {
      return JSON.parse(Ditto.arrayBufferToString(bytePayload));
    } catch (e) {
      return null;
    }
  }
  return null;
}

function mapToDittoProtocolMsgWrapper(externalMsg) {
  return mapToDittoProtocolMsg(externalMsg.headers, externalMsg.textPayload,
    externalMsg.bytePayload, externalMsg.contentType);
}

function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path,
                                 dittoHeaders, value, status, extra) {
  var textPayload = JSON.stringify(Ditto.buildDittoProtocolMsg(namespace, name, group, channel,
    criterion, action, path, dittoHeaders, value, status, extra));
  return Ditto.buildExternalMsg(dittoHeaders, textPayload, null,
    "application/vnd.eclipse.ditto+json");
}

function hasChannel(group) {
  return group === "things";
}

function mapFromDittoProtocolMsgWrapper(dittoProtocolMsg) {
  var topicSplit = dittoProtocolMsg.topic.split("/");
  var namespace = topicSplit[0];
  var name = topicSplit[1];
  var group = topicSplit[2];
  var channel, criterion, rest;
  if (hasChannel(group)) {
    channel = topicSplit[3];
    criterion = topicSplit[4];
    rest = topicSplit.slice(5);
  } else {
    channel = "none";
    criterion = topicSplit[3];
    rest = topicSplit.slice(4);
  }
  // A message subject may contain '/': the action is the whole rest of the topic.
  var action = rest.length === 0 ? undefined : rest.join("/");
  return mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action,
    dittoProtocolMsg.path, dittoProtocolMsg.headers, dittoProtocolMsg.value,
    dittoProtocolMsg.status, dittoProtocolMsg.extra);
}
