{{ config(materialized='table') }}

-- One row per order, with the order's payments pivoted into one column per
-- payment method plus a grand total. The semantic layer's Orders view sits
-- directly on this table.

{#- Keep this list in step with the accepted_values test on
    stg_payments.payment_method: a method missing here would silently drop
    out of the per-method columns while still counting toward `amount`. -#}
{% set payment_methods = ['credit_card', 'coupon', 'bank_transfer', 'gift_card'] %}

with orders as (

    select * from {{ ref('stg_orders') }}

),

payments as (

    select * from {{ ref('stg_payments') }}

),

-- Collapse payments to one row per order before joining, so the join to
-- orders cannot fan out.
payments_per_order as (

    select
        order_id,
        {% for method in payment_methods -%}
        sum(case when payment_method = '{{ method }}' then amount else 0 end) as {{ method }}_amount,
        {% endfor -%}
        sum(amount) as total_amount
    from payments
    group by order_id

),

final as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        -- an order with no payments of a given method gets 0, not null, so
        -- the per-method columns always add up to `amount`
        {% for method in payment_methods -%}
        coalesce(payments_per_order.{{ method }}_amount, 0) as {{ method }}_amount,
        {% endfor -%}
        coalesce(payments_per_order.total_amount, 0) as amount
    from orders
    left join payments_per_order
        on orders.order_id = payments_per_order.order_id

)

select * from final
