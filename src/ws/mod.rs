//! The WebSocket protocol core, sans IO: bytes in, events and bytes out.
//! No sockets, no io_uring, no async; the runtime and the load generator
//! both drive it. See `docs/architecture.md` for how a frame travels.

pub mod client;
pub mod close;
pub mod connection;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod keepalive;
pub mod mask;
pub mod utf8;

pub use close::{code, ProtocolError};
pub use connection::{
    Connection, Event, Failure, Message, MessageKind, Read, Role, State, DEFAULT_MAX_MESSAGE,
};
pub use frame::OpCode;
