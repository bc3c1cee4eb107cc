//! The hub: where signals meet. Acknowledgements today; routing of twin events, live signals,
//! responses and announcements to connection targets lands here next.

pub mod acks;
