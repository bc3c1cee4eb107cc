//! A mapper that reads a file: it imports wasi:filesystem, which the host links without any
//! directory, so the read fails and the mapping fails with the reason.

wit_bindgen::generate!({ path: "../../../wit", world: "ferrule:mapper/mapper" });

use exports::ferrule::mapper::mapping::{DittoMessage, ExternalMessage, Guest, MappingError};

struct FileOpen;

impl Guest for FileOpen {
    fn configure(_options: String) -> Result<(), MappingError> {
        Ok(())
    }

    fn map_inbound(_message: ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        let secret = std::fs::read_to_string("/etc/passwd").map_err(|e| MappingError {
            message: e.to_string(),
            description: None,
        })?;
        Err(MappingError {
            message: format!("read {} bytes", secret.len()),
            description: None,
        })
    }

    fn map_outbound(_message: DittoMessage) -> Result<Vec<ExternalMessage>, MappingError> {
        Ok(Vec::new())
    }
}

export!(FileOpen);
