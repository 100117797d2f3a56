"""docs/operations.md, "A stall's pile counts too". Usage: pile.py RINGFAN_BIN N.
A fast subscriber of md.> (reading all the time) and a publisher that
sends N messages of ~1 KB while the broker is SIGSTOPped; after SIGCONT,
does the subscriber get everything, or is it judged slow (dropped/1008)?"""
import asyncio, json, os, signal, subprocess, sys, time, urllib.request
from websockets.asyncio.client import connect
BIN, N, PORT = sys.argv[1], int(sys.argv[2]), 18555
p = subprocess.Popen([BIN, "--shards", "1", "--listen", f"127.0.0.1:{PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
def metric(name):
    t = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith(name))
async def main():
    async with connect(f"ws://127.0.0.1:{PORT}/ws", max_size=None) as sub, connect(f"ws://127.0.0.1:{PORT}/ws") as pub:
        await sub.send(json.dumps({"op":"sub","topics":["md.>"],"id":1}))
        await sub.recv()
        got = []
        async def reader():
            try:
                while True:
                    m = json.loads(await sub.recv())
                    if m.get("op") == "msg":
                        got.append(m["seq"])
            except Exception as e:
                got.append(("closed", repr(e)[:80]))
        r = asyncio.create_task(reader())
        os.kill(p.pid, signal.SIGSTOP)
        pad = "x" * 1000
        for i in range(N):
            await pub.send(json.dumps({"op":"pub","topic":"md.X.A","data":{"i":i,"p":pad}}))
        await asyncio.sleep(0.3)
        os.kill(p.pid, signal.SIGCONT)
        await asyncio.sleep(2)
        r.cancel()
        seqs = [g for g in got if isinstance(g, int)]
        closed = [g for g in got if not isinstance(g, int)]
        print(f"N={N} received={len(seqs)} last={seqs[-1] if seqs else None} closed={closed} dropped={metric('ringfan_dropped_total')} slowdisc={metric('ringfan_slow_disconnects_total')}")
asyncio.run(main())
p.terminate(); p.wait()
