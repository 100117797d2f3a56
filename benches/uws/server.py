"""The comparison C++ broker: uWebSockets, through socketify's bindings.

The issue's reference point is "the fastest C++ WebSocket pub/sub server";
that is uWebSockets (its TopicTree coalesces everything queued for a
subscriber into one send per loop iteration). socketify ships it prebuilt
(libsocketify_linux_amd64.so, uWebSockets + uSockets on libuv), so it can be
measured here, on this machine, with the same load generator as ringfan.

This adaptor speaks the subset of protocol.md the load generator's fanout,
feed and echo scenarios use: sub/unsub (exact topics, no wildcards: uWS has
none), pub with per-topic seq, ack by id, /echo. The fan-out itself is
uWS's: one `publish` per message, framed once, queued to every subscriber in
C++. Python runs once per publish (parse, seq, frame), never per subscriber.

socketify's own `App.run()` drives libuv from an asyncio loop that spins
(`call_soon`) while there is traffic, which would bill a busy-poll to the
broker; this script runs libuv's blocking `uv_run` instead, as a native uWS
server does.

    benches/uws/venv/bin/python benches/uws/server.py --port 9312
"""

import argparse
import json
import sys

from socketify import App, OpCode

DECODER = json.JSONDecoder()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=9312)
    ap.add_argument("--max-backpressure", type=int, default=1 << 20)
    args = ap.parse_args()

    app = App()
    seqs = {}

    def reply(ws, text):
        ws.send(text, OpCode.TEXT)

    def err(ws, ident, code, message):
        body = {"op": "err", "code": code, "message": message}
        if ident is not None:
            body["id"] = ident
        reply(ws, json.dumps(body, separators=(",", ":")))

    def on_message(ws, message, opcode):
        if opcode != OpCode.TEXT:
            return err(ws, None, "bad_op", "binary frames are not part of the protocol")
        text = message if isinstance(message, str) else message.decode("utf-8")
        try:
            req = json.loads(text)
        except ValueError:
            return err(ws, None, "bad_json", "not JSON")
        ident = req.get("id")
        op = req.get("op")
        if op == "pub":
            topic = req.get("topic")
            at = text.find('"data":')
            if not isinstance(topic, str) or at < 0:
                return err(ws, ident, "bad_op", "pub needs topic and data")
            start = at + 7
            while text[start] in " \t\r\n":
                start += 1
            _, end = DECODER.raw_decode(text, start)
            seq = seqs.get(topic, 0) + 1
            seqs[topic] = seq
            frame = '{"op":"msg","topic":%s,"seq":%d,"data":%s}' % (
                json.dumps(topic),
                seq,
                text[start:end],
            )
            # The socket's publish, not the app's: it goes through the
            # TopicTree's per-subscriber queues, drained once per loop
            # iteration (uWS's coalescing; the app's publish sends at once).
            # It skips the publishing socket itself, which the load
            # generator's publishers never subscribe with.
            ws.publish(topic, frame, OpCode.TEXT)
        elif op in ("sub", "unsub"):
            topics = req.get("topics")
            if topics is None and "topic" in req:
                topics = [req["topic"]]
            if not isinstance(topics, list):
                return err(ws, ident, "bad_op", "sub needs topics")
            for topic in topics:
                if op == "sub":
                    ws.subscribe(topic)
                else:
                    ws.unsubscribe(topic)
        else:
            return err(ws, ident, "bad_op", "unknown op")
        if ident is not None:
            reply(ws, '{"op":"ack","id":%d}' % ident)

    behaviour = {
        "max_payload_length": 1 << 20,
        "idle_timeout": 120,
        "max_backpressure": args.max_backpressure,
        "message": on_message,
    }
    app.ws("/ws", behaviour)
    app.ws(
        "/echo",
        {
            "max_payload_length": 1 << 24,
            "message": lambda ws, message, opcode: ws.send(message, opcode),
        },
    )

    def listening(config):
        print(f"uws: listening on 127.0.0.1:{args.port}", flush=True)

    app.listen(args.port, listening)
    # Blocking uv_run: see the module docstring.
    app.loop.uv_loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
