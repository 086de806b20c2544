"""params.yaml as typed, frozen, validated objects: TODO."""
