"""DVC stage entry points: each is a thin script (params section in, declared outs out)."""
