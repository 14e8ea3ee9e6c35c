"""The node-local Hubble Observer API source."""
