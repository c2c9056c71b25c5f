"""Fault injection: ``rules`` says what may fail, ``injector`` draws it per request."""
