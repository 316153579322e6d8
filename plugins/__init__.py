"""Model plugins bundled with progcodec (installed as ``progcodec_plugins``)."""
