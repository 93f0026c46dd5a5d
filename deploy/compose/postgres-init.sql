-- Run once by the postgres image on an empty data directory: the registrar and the verifier are
-- separate services and never share tables (docs/deploy.md), so each has its own database.
CREATE DATABASE registrar OWNER geoattest;
