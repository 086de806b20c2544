"""params.yaml as typed, frozen, validated objects (floor 0: imports only dlbasics.errors).

One module per section of the file (settings, datasets, variants, lessons, profiles, report),
`params.Params` for the whole of it, and `loading.load_params`, which every stage calls before
it does any work: a bad value anywhere stops the stage with one line naming the key path, what
was expected and what was found.
"""
