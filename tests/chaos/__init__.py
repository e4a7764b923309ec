"""Chaos framework tests: checkers on hand-written and generated histories; history and generators."""
