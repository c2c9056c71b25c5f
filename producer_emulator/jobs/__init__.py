"""Work that outlives a request: generation timers and callback delivery."""
