"""Telling other parties what happened: back-channel logout notices to clients."""
