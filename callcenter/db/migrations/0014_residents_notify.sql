-- Every change to the residents directory (the CSV import, an operator's SQL) is
-- announced, so that the IVR's copy in memory (callcenter/residents.py) follows it:
-- the caller lookup at a call's start never waits on the database.
CREATE OR REPLACE FUNCTION cc_residents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cc_residents', TG_OP);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS residents_changed ON residents;
CREATE TRIGGER residents_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON residents
    FOR EACH STATEMENT EXECUTE FUNCTION cc_residents_changed();
