"""The API layer: gRPC servicers and their registration table (registry.py), proto <->
domain conversion, the auth guard, the map from domain errors to status codes, the
health service, reflection and the operations catalogue. The only room that speaks
protobuf and grpc."""
