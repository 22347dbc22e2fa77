from cryptography.fernet import Fernet
import pytest

from app.crypto import TokenCipher, UndecryptableToken


def test_round_trip_and_ciphertext_is_not_plaintext():
    cipher = TokenCipher((Fernet.generate_key().decode(),))
    blob = cipher.encrypt("BQD-secret-access-token")
    assert b"secret" not in blob
    assert cipher.decrypt(blob) == "BQD-secret-access-token"


def test_key_rotation_new_key_first_still_reads_old_tokens():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    blob = TokenCipher((old,)).encrypt("token")
    rotated = TokenCipher((new, old))
    assert rotated.decrypt(blob) == "token"
    assert TokenCipher((new,)).decrypt(rotated.encrypt("token")) == "token"


def test_wrong_key_gives_a_clear_error():
    blob = TokenCipher((Fernet.generate_key().decode(),)).encrypt("token")
    with pytest.raises(UndecryptableToken, match="TOKEN_ENCRYPTION_KEY"):
        TokenCipher((Fernet.generate_key().decode(),)).decrypt(blob)
