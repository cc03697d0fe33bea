from kms.errors import KeyInUse


def refuse_every_key(key) -> None:
    raise KeyInUse(f"Key {key.alias} is used by a test guard.")
