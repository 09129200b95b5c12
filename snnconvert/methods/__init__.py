"""The methods snnconvert offers, one package each.

Every subpackage is one method of a paper (see its ``__init__`` docstring): its coding (the
conversion), its neurons (dynamics, one-step update, trainability, export hooks), its training
hooks, reports and metrics. Importing the package registers all of it
(:mod:`snnconvert.registry` does that on first use); core modules never import a method.
"""
