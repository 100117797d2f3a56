"""asyncio client for the ringfan pub/sub broker (docs/protocol.md).

    async with ringfan.Client("ws://localhost:8080/ws") as client:
        async with client.subscribe("md.NASDAQ.*", snapshot=True) as sub:
            await client.publish("md.NASDAQ.AAPL", {"bid": 189.5})
            async for msg in sub:
                print(msg.topic, msg.seq, msg.data)
"""

from ._errors import RingfanError
from ._patterns import matches, overlap
from ._subscription import Subscription
from ._types import Backoff, Gap, Message, Reset, Resync, State, StateChange, Stats
from .client import Client

__all__ = [
    "Backoff",
    "Client",
    "Gap",
    "Message",
    "Reset",
    "Resync",
    "RingfanError",
    "State",
    "StateChange",
    "Stats",
    "Subscription",
    "matches",
    "overlap",
]
