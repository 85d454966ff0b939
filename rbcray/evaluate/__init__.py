"""Downstream evaluation (paper Sec. 5, Table 2): does synthetic data help real models?"""
