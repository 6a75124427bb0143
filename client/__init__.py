"""The medcompute client library and command line."""

from medcompute.client.client import DEFAULT_SERVER, Client, Result, ServiceError
from medcompute.client.ops import parse_op
from medcompute.client.store import StoreClient, StoredImage

__all__ = ["Client", "Result", "ServiceError", "DEFAULT_SERVER", "parse_op", "StoreClient",
           "StoredImage"]
