//! Config file format, validation and JSON Schema of OpenAgentIO. (in progress)
