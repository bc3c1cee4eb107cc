"""A Fluentd Forward-protocol receiver for Ferrule's tests, independent of Ferrule's encoder:
listens on 127.0.0.1:<port>, decodes the MessagePack stream with the `msgpack` package, answers
each chunk id with {"ack": id} as Fluentd does with require_ack_response, and prints one JSON line
per record: {"tag": ..., "time": {"ext": 0, "sec": ..., "nsec": ...}, "record": {...}}.
"""
import json
import socket
import sys

import msgpack


def event_time(code, data):
    return {"ext": code, "sec": int.from_bytes(data[:4], "big"), "nsec": int.from_bytes(data[4:], "big")}


def main():
    port = int(sys.argv[1])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    print(json.dumps({"listening": port}), flush=True)
    while True:
        connection, _ = server.accept()
        unpacker = msgpack.Unpacker(raw=False, ext_hook=event_time)
        while True:
            data = connection.recv(65536)
            if not data:
                break
            unpacker.feed(data)
            for message in unpacker:
                tag, entries = message[0], message[1]
                for time, record in entries:
                    print(json.dumps({"tag": tag, "time": time, "record": record}), flush=True)
                option = message[2] if len(message) > 2 else {}
                if "chunk" in option:
                    connection.sendall(msgpack.packb({"ack": option["chunk"]}))


main()
