"""One folder per concern; ``dg`` loads every module here (see ``definitions.py``)."""
