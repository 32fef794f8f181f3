"""The wire contract between wearable firmware and the gateway (numpy + pyserial only)."""
