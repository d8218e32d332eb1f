"""The pipeline's stages: source -> cataloger -> scanner -> verifier, each behind
:mod:`supplychain.interface`."""
