"""The image store: registering, fetching and deleting images, versions, tiers and their
moves, the store's maintenance."""
