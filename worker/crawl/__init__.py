"""Crawls: the frontier's refill and settle, and the sitemaps that seed it."""
