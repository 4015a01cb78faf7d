-- One live chain per refresh token: a retry inside the grace window is answered with the
-- same successor pair. Each rotated refresh token keeps that pair (itself and the access token
-- issued with it) sealed with AES-256-GCM under a key derived from its PARENT token, which the
-- database never holds (it keeps only SHA-256 of it): neither this file nor the
-- key-encryption key can open it. Wiped as soon as the token itself is used.
-- (Numbered 0011 so that it never shares a version with another change's 0010.)
ALTER TABLE refresh_tokens ADD COLUMN issued_sealed BLOB;
