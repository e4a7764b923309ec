"""Chaos framework: Jepsen-style DB, Client, Nemesis, Generator, Checker and History pieces."""
