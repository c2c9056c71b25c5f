"""One module per API family; each has a blocking and an async resource class."""
