"""Images: manifests, platforms, media types, import/export and unpack orchestration."""
