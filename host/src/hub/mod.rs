//! The hub: where signals meet. Acknowledgements, and routing of outbound signals to the
//! targets of open connections (filters, namespaces, extra fields).

pub mod acks;
pub mod enforcement;
pub mod resolve;
pub mod routing;
