-- Dunning (package process): two more timer kinds. payment_overdue suspends a
-- tenant whose billing status stayed past_due beyond its edition's grace
-- (aggregate/catalog.json, payment_grace_days); payment_recovered resumes a
-- payment_overdue suspension once the billing status is active again.
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check
    CHECK (kind IN ('provision', 'trial_expiry', 'auto_resume', 'cancellation', 'purge', 'payment_overdue', 'payment_recovered'));

---- create above / drop below ----

DELETE FROM timers WHERE kind IN ('payment_overdue', 'payment_recovered');
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check
    CHECK (kind IN ('provision', 'trial_expiry', 'auto_resume', 'cancellation', 'purge'));
