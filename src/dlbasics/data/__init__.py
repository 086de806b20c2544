"""The data's files (floor 1: imports only floor 0).

`sources` writes every dataset of params.yaml's `data:` as raw files (generated, bundled with
scikit-learn, or read from IDX files by `idx`); `prepared` splits and scales them (tables
encoded by `tabular`) and reads them back for a variant, every file checked against its digest.
"""
