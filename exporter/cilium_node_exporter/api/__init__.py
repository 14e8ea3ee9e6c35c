"""Generated Hubble API messages (see proto/ and scripts/gen_proto.py)."""
