"""Pieces of the method written from scratch, shared by the chapters that build them and by
tests/test_from_scratch.py, which checks each against the package on random inputs."""
