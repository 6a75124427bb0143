"""The API layer: gRPC servicers, proto <-> domain conversion, the auth guard, the map
from domain errors to status codes, reflection and the operations catalogue. The only
room that speaks protobuf and grpc."""
