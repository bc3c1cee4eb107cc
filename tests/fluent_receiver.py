"""A Fluentd Forward-protocol receiver for Ferrule's tests, independent of Ferrule's encoder:
listens on 127.0.0.1:<port>, decodes the MessagePack stream with the `msgpack` package, answers
each chunk id with {"ack": id} as Fluentd does with require_ack_response, and prints one JSON line
per record: {"tag": ..., "time": {"ext": 0, "sec": ..., "nsec": ...}, "record": {...}}.
With `--tls CERT KEY` after the port it speaks TLS (Fluentd's `<transport tls>`). Connections
are served at once, each on a thread.
"""
import json
import socket
import ssl
import sys
import threading

import msgpack


def event_time(code, data):
    return {"ext": code, "sec": int.from_bytes(data[:4], "big"), "nsec": int.from_bytes(data[4:], "big")}


def serve(connection, tls, lock):
    """Reads one connection's messages until it closes; prints each record, acks each chunk."""
    if tls is not None:
        try:
            connection = tls.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with lock:
                print(json.dumps({"handshake_failed": str(e)}), flush=True)
            connection.close()
            return
    unpacker = msgpack.Unpacker(raw=False, ext_hook=event_time)
    while True:
        try:
            data = connection.recv(65536)
        except OSError:
            break
        if not data:
            break
        unpacker.feed(data)
        for message in unpacker:
            tag, entries = message[0], message[1]
            with lock:
                for time, record in entries:
                    print(json.dumps({"tag": tag, "time": time, "record": record}), flush=True)
            option = message[2] if len(message) > 2 else {}
            if "chunk" in option:
                connection.sendall(msgpack.packb({"ack": option["chunk"]}))
    connection.close()


def main():
    port = int(sys.argv[1])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    tls = None
    if len(sys.argv) > 2 and sys.argv[2] == "--tls":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
    lock = threading.Lock()
    print(json.dumps({"listening": port}), flush=True)
    # Each connection is served on a thread of its own: several senders at once.
    while True:
        connection, _ = server.accept()
        threading.Thread(target=serve, args=(connection, tls, lock), daemon=True).start()


main()
