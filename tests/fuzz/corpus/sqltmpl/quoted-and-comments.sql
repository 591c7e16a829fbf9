SELECT ':value', ":key", [:topic], `:offset`, 'it''s :x' -- :comment
, /* :block /* nested */ :still */ :value;  -- trailing
;