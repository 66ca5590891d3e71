// The where-filter builder: one row per condition over the collection's filterable properties, joined by And or Or.
import { h } from "./dom.js";
import { operatorsFor } from "./graphql.js";

export function whereFieldset(state, collection, redraw) {
  const filterable = collection.properties.filter((p) => p.filterable);
  const rows = state.conditions.map((condition, index) => {
    const property = filterable.find((p) => p.name === condition.path) || filterable[0];
    condition.type = property.type;
    if (!operatorsFor(property.type).includes(condition.operator)) condition.operator = "Equal";
    return h(
      "li",
      { class: "condition" },
      h(
        "select",
        {
          "aria-label": "property",
          class: "where-path",
          onchange: (e) => {
            condition.path = e.target.value;
            redraw();
          },
        },
        filterable.map((p) => h("option", { value: p.name, selected: p.name === condition.path }, `${p.name} (${p.type})`)),
      ),
      h(
        "select",
        { "aria-label": "operator", class: "where-operator", onchange: (e) => (condition.operator = e.target.value) },
        operatorsFor(property.type).map((op) => h("option", { value: op, selected: op === condition.operator }, op)),
      ),
      h("input", { "aria-label": "value", class: "where-value", value: condition.value, placeholder: property.type.endsWith("[]") ? "a, b" : "value", oninput: (e) => (condition.value = e.target.value) }),
      h(
        "button",
        {
          type: "button",
          class: "remove",
          "aria-label": "Remove this condition",
          onclick: () => {
            state.conditions.splice(index, 1);
            redraw();
          },
        },
        "×",
      ),
    );
  });
  return h(
    "fieldset",
    { class: "where" },
    h("legend", {}, "where"),
    state.conditions.length > 1
      ? h(
          "label",
          {},
          "match ",
          h(
            "select",
            { id: "where-combine", onchange: (e) => (state.combine = e.target.value) },
            h("option", { value: "And", selected: state.combine === "And" }, "all (And)"),
            h("option", { value: "Or", selected: state.combine === "Or" }, "any (Or)"),
          ),
        )
      : null,
    h("ul", { class: "conditions" }, rows),
    filterable.length
      ? h(
          "button",
          {
            type: "button",
            id: "where-add",
            onclick: () => {
              state.conditions.push({ path: filterable[0].name, operator: "Equal", value: "", type: filterable[0].type });
              redraw();
              document.querySelector("#search-form .condition:last-child .where-path").focus();
            },
          },
          "Add condition",
        )
      : h("span", { class: "muted" }, "no filterable properties"),
  );
}
