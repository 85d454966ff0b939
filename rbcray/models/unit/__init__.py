"""UNIT translation of normal red cells into a rare morphology class (issue 14): the networks,
the cosine alpha blending into the host smear and the pseudo-label filter."""
