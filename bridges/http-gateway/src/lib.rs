//! HTTP/SSE gateway of OpenAgentIO. (in progress)
