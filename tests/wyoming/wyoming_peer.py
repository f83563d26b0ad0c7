"""The Home Assistant side of Hark's Wyoming tests, played by the real
`wyoming` library (PyPI).

Reads one JSON command per line on stdin and writes one JSON answer per line
on stdout. Each command names a connection ("conn") to the hub's Wyoming
listener. Events are BUILT with the library's classes (Describe, Intent,
Entity) and written with its `write_event`; the hub's answers are READ with
its `read_event` and parsed with `Info.from_event`, `Handled.from_event`,
`NotHandled.from_event` and `Error.from_event`, so a field the hub frames or
names wrongly fails here the way it would fail in Home Assistant.

Run by tests/src/wyoming.rs through target/hermes-venv/bin/python
(scripts/hermes-venv.sh makes it).
"""

import json
import socket
import sys
import traceback

try:
    import importlib.metadata

    from wyoming.error import Error
    from wyoming.event import Event, read_event, write_event
    from wyoming.handle import Handled, NotHandled
    from wyoming.info import Describe, Info
    from wyoming.intent import Entity, Intent
except ImportError as e:
    print(json.dumps({"missing": str(e)}), flush=True)
    sys.exit(1)

CONNECTIONS = {}


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.writer = self.sock.makefile("wb")

    def write(self, event):
        write_event(event, self.writer)

    def read(self):
        event = read_event(self.reader)
        if event is None:
            return {"type": None}
        if Info.is_type(event.type):
            info = Info.from_event(event)
            return {
                "type": "info",
                "handle": [
                    {
                        "name": p.name,
                        "description": p.description,
                        "version": p.version,
                        "installed": p.installed,
                        "attribution": p.attribution.name,
                        "models": [
                            {"name": m.name, "description": m.description, "languages": m.languages}
                            for m in p.models
                        ],
                    }
                    for p in info.handle
                ],
                "asr": len(info.asr),
                "tts": len(info.tts),
            }
        if Handled.is_type(event.type):
            return {"type": "handled", "text": Handled.from_event(event).text}
        if NotHandled.is_type(event.type):
            return {"type": "not-handled", "text": NotHandled.from_event(event).text}
        if Error.is_type(event.type):
            error = Error.from_event(event)
            return {"type": "error", "text": error.text, "code": error.code}
        return {"type": event.type, "data": event.data}


def connect(c):
    CONNECTIONS[c["conn"]] = Connection(c["port"])
    return {"ok": True}


def describe(c):
    conn = CONNECTIONS[c["conn"]]
    conn.write(Describe().event())
    return conn.read()


def intent(c):
    conn = CONNECTIONS[c["conn"]]
    entities = [Entity(name=e["name"], value=e.get("value")) for e in c.get("entities", [])]
    conn.write(Intent(name=c["name"], entities=entities, context=c.get("context")).event())
    return conn.read()


def event(c):
    conn = CONNECTIONS[c["conn"]]
    conn.write(Event(type=c["type"], data=c.get("data", {})))
    return conn.read()


def raw(c):
    conn = CONNECTIONS[c["conn"]]
    conn.writer.write(bytes.fromhex(c["hex"]))
    conn.writer.flush()
    return conn.read()


def read(c):
    return CONNECTIONS[c["conn"]].read()


def close(c):
    conn = CONNECTIONS.pop(c["conn"])
    conn.sock.close()
    return {"ok": True}


OPS = {f.__name__: f for f in (connect, describe, intent, event, raw, read, close)}


def main():
    print(json.dumps({"ready": importlib.metadata.version("wyoming")}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = OPS[command["op"]](command)
        except Exception as e:  # reported to the Rust side, which fails the test
            answer = {"error": repr(e), "trace": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
