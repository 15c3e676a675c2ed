//! The sidecar configuration (rendered by the operator, parsed by the sidecar).
