"""One module per `rxf` verb, each with ``add_parser(subparsers)`` setting a ``handler``."""
