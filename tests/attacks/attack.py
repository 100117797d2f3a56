"""What the attack scripts share: start a broker binary, read its RSS, and
speak just enough WebSocket over raw sockets (no dependencies). Imported by
the scripts beside it (run them as `python3 tests/attacks/NAME.py ...`)."""
import subprocess, threading

# A valid upgrade for /ws (the RFC's sample key).
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def start(bin_, flags):
    """Start `bin_` on 127.0.0.1 with `flags`; returns (process, port)."""
    p = subprocess.Popen([bin_, "--listen", "127.0.0.1:0", "--no-pin", *flags],
                         stdout=subprocess.PIPE, text=True)
    # Start-up notes (what caps the connection count...) come first.
    line = p.stdout.readline()
    while line and "listening on" not in line:
        line = p.stdout.readline()
    if not line:
        raise SystemExit(f"{bin_} exited before listening")
    port = int(line.split("127.0.0.1:")[1].split()[0])
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, port


def rss_mib(pid):
    """VmRSS of `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def frame(text):
    """A masked text frame (zero mask key: payload unchanged)."""
    b = text.encode()
    n = len(b)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + b
