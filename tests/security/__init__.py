"""Security tests: card data at rest and in logs (R16), the local API against browsers (R17), retention."""
