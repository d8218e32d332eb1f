"""Deciding: the one decision function, the policy, VEX, and the gate that answers CI."""
