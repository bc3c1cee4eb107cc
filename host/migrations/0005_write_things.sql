-- A batch of the twin in one round trip: every change of the batch, each conditional on the
-- revision it was based on (`bases[i]` NULL: the thing must not exist yet; `docs[i]` NULL: a
-- delete), applied in the order given (the writer sorts them by id, so two instances writing
-- the same things lock them in one order). A change whose base is no longer the stored
-- revision (another instance changed the thing first) raises serialization_failure (40001)
-- naming the thing, and the call changes nothing: it is one statement.
CREATE FUNCTION ferrule_write_things(ids TEXT[], revisions BIGINT[], docs TEXT[], bases BIGINT[])
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    written BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        IF docs[i] IS NULL THEN
            DELETE FROM things WHERE id = ids[i] AND revision = bases[i];
        ELSIF bases[i] IS NULL THEN
            INSERT INTO things (id, revision, doc) VALUES (ids[i], revisions[i], docs[i])
                ON CONFLICT (id) DO NOTHING;
        ELSE
            UPDATE things SET revision = revisions[i], doc = docs[i]
                WHERE id = ids[i] AND revision = bases[i];
        END IF;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written = 0 THEN
            RAISE EXCEPTION 'thing % was changed by another instance', ids[i]
                USING ERRCODE = 'serialization_failure';
        END IF;
    END LOOP;
END $$;
